-- One row per phone or e-mail of an amoCRM contact, normalised by warehouse/contact_points.py.
with

source as (

    select * from {{ source('amocrm', 'contact_points') }}

),

renamed as (

    select
        account,
        cast(contact_id as bigint) as contact_id,
        kind as point_kind,
        value_raw,
        value_normalized,
        value_normalized is not null as is_valid
    from source

)

select distinct * from renamed
