-- One row per amoCRM customer of the buyer funnel ("Покупатели"; newest landed version):
-- a repeat buyer with a planned next purchase. Their purchases are stg_amocrm__transactions.
with

source as (

    {{ raw_source('amocrm', 'amocrm__customers') }}

),

latest as (

    {{ latest_version('source') }}

),

-- the main contact of the customer; the first linked contact when none is flagged main
-- (macros/main_contact.sql, shared with stg_amocrm__leads): transactions belong to this person
main_contact as (

    {{ amocrm_main_contact('latest') }}

),

-- the customer's own fields as text, each payload parsed once (macros/json.sql)
fields as (

    select
        latest.account,
        latest.record_id,
        latest.extracted_at,
        {{ json_str_columns('latest.payload', {
            'status_id': 'status_id',
            'responsible_user_id': 'responsible_user_id',
            'customer_name': 'name',
            'next_price': 'next_price',
            'periodicity': 'periodicity',
            'ltv': 'ltv',
            'purchases_count': 'purchases_count',
            'average_check': 'average_check',
            'is_deleted': 'is_deleted',
            'next_date': 'next_date',
            'created_at': 'created_at',
            'updated_at': 'updated_at',
        }) }}
    from latest

),

renamed as (

    select
        ----------  ids
        fields.account,
        cast(fields.record_id as bigint) as amocrm_customer_id,
        cast(fields.status_id as bigint) as status_id,
        cast(fields.responsible_user_id as bigint)
            as responsible_user_id,
        main_contact.contact_id as main_contact_id,

        ----------  text
        {{ safe_text('fields.customer_name') }} as customer_name,

        ----------  numerics (JSON numbers; money in the account currency)
        {{ money('fields.next_price') }} as next_price,
        cast(fields.periodicity as integer) as periodicity,
        {{ money('fields.ltv') }} as ltv,
        cast(fields.purchases_count as integer) as purchases_count,
        {{ money('fields.average_check') }} as average_check,

        ----------  booleans
        coalesce(fields.is_deleted = 'true', false) as is_deleted,

        ----------  timestamps (local, reporting time zone)
        {{ epoch_to_local('fields.next_date') }} as next_purchase_at,
        {{ epoch_to_local('fields.created_at') }} as created_at,
        {{ epoch_to_local('fields.updated_at') }} as updated_at

    from fields
    left join main_contact
        on fields.account = main_contact.account
        and fields.record_id = main_contact.record_id

)

select * from renamed
