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

renamed as (

    select
        ----------  ids
        latest.account,
        cast(latest.record_id as bigint) as amocrm_customer_id,
        cast({{ json_str('latest.payload', 'status_id') }} as bigint) as status_id,
        cast({{ json_str('latest.payload', 'responsible_user_id') }} as bigint)
            as responsible_user_id,
        main_contact.contact_id as main_contact_id,

        ----------  text
        {{ safe_text(json_str('latest.payload', 'name')) }} as customer_name,

        ----------  numerics (JSON numbers; money in the account currency)
        {{ money(json_str('latest.payload', 'next_price')) }} as next_price,
        cast({{ json_str('latest.payload', 'periodicity') }} as integer) as periodicity,
        {{ money(json_str('latest.payload', 'ltv')) }} as ltv,
        cast({{ json_str('latest.payload', 'purchases_count') }} as integer) as purchases_count,
        {{ money(json_str('latest.payload', 'average_check')) }} as average_check,

        ----------  booleans
        coalesce({{ json_str('latest.payload', 'is_deleted') }} = 'true', false) as is_deleted,

        ----------  timestamps (local, reporting time zone)
        {{ epoch_to_local(json_str('latest.payload', 'next_date')) }} as next_purchase_at,
        {{ epoch_to_local(json_str('latest.payload', 'created_at')) }} as created_at,
        {{ epoch_to_local(json_str('latest.payload', 'updated_at')) }} as updated_at

    from latest
    left join main_contact
        on latest.account = main_contact.account
        and latest.record_id = main_contact.record_id

)

select * from renamed
