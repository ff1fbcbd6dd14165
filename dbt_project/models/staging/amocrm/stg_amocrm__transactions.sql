-- One row per amoCRM customer transaction (a purchase of a buyer-funnel customer), the
-- newest landed version. The API has no change filter, so every run pulls them all.
with

source as (

    {{ raw_source('amocrm', 'amocrm__transactions') }}

),

latest as (

    {{ latest_version('source') }}

),

renamed as (

    select
        ----------  ids
        latest.account,
        cast(latest.record_id as bigint) as transaction_id,
        -- customer_id is a field of the element; _embedded.customer.id says the same
        cast(coalesce(
            {{ json_str('latest.payload', 'customer_id') }},
            {{ json_str('latest.payload', '_embedded.customer.id') }}
        ) as bigint) as amocrm_customer_id,

        ----------  numerics (JSON number; money in the account currency)
        {{ money(json_str('latest.payload', 'price')) }} as amount,

        ----------  text
        {{ json_str('latest.payload', 'comment') }} as comment,

        ----------  booleans
        coalesce({{ json_str('latest.payload', 'is_deleted') }} = 'true', false) as is_deleted,

        ----------  timestamps (local, reporting time zone)
        {{ epoch_to_local(json_str('latest.payload', 'completed_at')) }} as completed_at,
        {{ epoch_to_local(json_str('latest.payload', 'created_at')) }} as created_at,
        {{ epoch_to_local(json_str('latest.payload', 'updated_at')) }} as updated_at

    from latest

)

select * from renamed
